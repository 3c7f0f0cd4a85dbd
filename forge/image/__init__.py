"""OCI images as immutable values (model), how forge builds them, and how they are read back."""
