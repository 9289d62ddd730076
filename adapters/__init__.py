"""Channel adapters: each turns its channel's payloads and signatures into core inputs and back."""
