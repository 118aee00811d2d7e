"""The channel-neutral core of the ICSSI bot, and its channel adapters."""
