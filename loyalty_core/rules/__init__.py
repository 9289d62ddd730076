"""Pure rule functions: no I/O, no clock, no database. Each is tested on its own."""
