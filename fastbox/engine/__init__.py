"""The warm engine behind the C `fastbox` client: `fastbox engine start|stop|status`."""
