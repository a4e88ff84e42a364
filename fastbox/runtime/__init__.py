"""Plans and runs containers: the only package that talks to fastbox._core."""
