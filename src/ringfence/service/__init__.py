"""The service layer: use cases, each one transaction, over the domain, the store and the drivers."""
