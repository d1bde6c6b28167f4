"""Account-level resources (catalog, templates, networks, disks): thin layers over the transport."""
