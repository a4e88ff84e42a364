"""Container records on disk: status rules and the store that keeps them."""
