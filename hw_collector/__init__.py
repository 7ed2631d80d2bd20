"""Real hardware and Ollama-residency gauges, from the sources that measure them."""
