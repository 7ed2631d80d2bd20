module ollama-otel-stack/tests/go_upstream

go 1.19
