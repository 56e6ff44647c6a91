"""One training loop on accelerate; methods are small strategy objects."""
