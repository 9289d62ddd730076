"""The HTTP face and the processes: the only place that wires everything together."""
