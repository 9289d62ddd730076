"""The loyalty core: members, the program's rules, the ledger and everything that moves balances.

It knows nothing of HTTP or of any channel: adapters build its inputs, the gateway calls it.
"""
