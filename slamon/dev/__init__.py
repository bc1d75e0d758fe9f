"""Development helpers: a local chain (anvil from npm) and the demo targets."""
