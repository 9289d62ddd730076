"""Marketplace stores (Youzan, Douyin shop, Eleme, Taobao/Tmall): one module per platform behind
one small interface (verify a delivery, parse it into core orders, answer its ack, push balance
changes) and a registry. Nothing here yet: the marketplaces work builds it.
"""
