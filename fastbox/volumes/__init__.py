"""Named and anonymous volumes (`fastbox volume`, `-v NAME:/path`, `-v /path`): a
directory per volume under $FASTBOX_ROOT/volumes, bound into containers; data that
outlives them and bypasses the overlay."""
