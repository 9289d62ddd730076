"""WeChat: mini-program login (code2session), phone numbers, server push and WeChat Pay v3.

Wraps wechatpy (synchronous: always called from a thread pool, never inline in a handler) with
every base URL pointed at ``WECHAT_API_BASE_URL`` / ``WECHATPAY_API_BASE_URL`` so tests talk to a
fake WeChat on loopback. Nothing here yet: the WeChat work builds it.
"""
