"""Gnocchi: the publisher, the resource definitions it ships and the upgrade that installs them."""
