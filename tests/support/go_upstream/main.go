// A small upstream on Go's own net/http (what Ollama's HTTP layer is), stdlib only, for the
// proxy's transport conformance tests (tests/e2e/proxy/test_transport_conformance.py). Every answer names
// the request it answers (the id query parameter), so a crossed answer shows.
//
//	go run . -addr 127.0.0.1:0   (prints "listening on ADDR" once it accepts)
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

func intParam(r *http.Request, name string, fallback int) int {
	if v, err := strconv.Atoi(r.URL.Query().Get(name)); err == nil {
		return v
	}
	return fallback
}

// noDate keeps answers byte-identical between runs: Go writes a Date header unless it is set to nil.
func noDate(w http.ResponseWriter) { w.Header()["Date"] = nil }

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	mux := http.NewServeMux()

	// Chunked streaming, one flush a chunk, as Ollama streams NDJSON.
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		noDate(w)
		id := r.URL.Query().Get("id")
		n := intParam(r, "n", 5)
		delay := time.Duration(intParam(r, "delay_ms", 0)) * time.Millisecond
		w.Header().Set("Content-Type", "application/x-ndjson")
		flusher := w.(http.Flusher)
		for i := 0; i < n; i++ {
			fmt.Fprintf(w, "{\"id\":%q,\"chunk\":%d}\n", id, i)
			flusher.Flush()
			if delay > 0 {
				time.Sleep(delay)
			}
		}
		fmt.Fprintf(w, "{\"id\":%q,\"done\":true}\n", id)
	})

	// Reads the whole body (Go sends "100 Continue" on the first read when the request expects it)
	// and names what it got; with size= it answers that many bytes (a large body back).
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		noDate(w)
		id := r.URL.Query().Get("id")
		if intParam(r, "early_hints", 0) == 1 {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
		}
		sum := sha256.New()
		n, err := io.Copy(sum, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		size := intParam(r, "size", 0)
		if size > 0 {
			w.Header().Set("Content-Length", strconv.Itoa(size+len(id)+1))
			fmt.Fprintf(w, "%s\n", id)
			block := make([]byte, 64*1024)
			for i := range block {
				block[i] = byte('a' + i%26)
			}
			for left := size; left > 0; {
				part := block
				if left < len(part) {
					part = part[:left]
				}
				w.Write(part)
				left -= len(part)
			}
			return
		}
		fmt.Fprintf(w, "{\"id\":%q,\"method\":%q,\"bytes\":%d,\"sha256\":%q}\n", id, r.Method, n, hex.EncodeToString(sum.Sum(nil)))
	})

	// Connection: close after the answer.
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		noDate(w)
		w.Header().Set("Connection", "close")
		fmt.Fprintf(w, "{\"id\":%q,\"closed\":true}\n", r.URL.Query().Get("id"))
	})

	// 204 and 304: no body, whatever the handler writes.
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		noDate(w)
		code := intParam(r, "code", 204)
		w.Header().Set("X-Request-Id", r.URL.Query().Get("id"))
		if code == http.StatusNotModified {
			w.Header().Set("ETag", "\"v1\"")
		}
		w.WriteHeader(code)
	})

	// A close in the middle of a body: the length promises more than is sent.
	mux.HandleFunc("/midclose", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		body := fmt.Sprintf("{\"id\":%q,\"part\":", id)
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body)+100, body)
		buf.Flush()
		conn.Close()
	})

	// Slow headers: nothing at all for delay_ms, then the answer.
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		noDate(w)
		time.Sleep(time.Duration(intParam(r, "delay_ms", 200)) * time.Millisecond)
		fmt.Fprintf(w, "{\"id\":%q,\"slow\":true}\n", r.URL.Query().Get("id"))
	})

	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", listener.Addr())
	os.Stdout.Sync()
	// Like Ollama's server (cmd/serve → server.Serve): a plain http.Server, no timeouts.
	server := &http.Server{Handler: mux}
	if err := server.Serve(listener); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
