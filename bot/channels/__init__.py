"""Channel adapters: thin translators between a platform and Inbound/Outbound."""
