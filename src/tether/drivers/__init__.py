"""Built-in drivers. Each subpackage holds an interface, drivers and a client."""
