"""Run the monitoring stack on this machine as native processes (``make up`` / ``make down``)."""
