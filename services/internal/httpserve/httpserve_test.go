package httpserve_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/touchstream/touchstream/services/internal/httpserve"
)

// TestDrain: a request in progress when the server is told to stop still gets its
// answer; Serve returns nil once it has.
func TestDrain(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inFlight := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(inFlight)
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "done")
	})
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	var addr net.Addr
	started := make(chan struct{})
	go func() {
		served <- httpserve.Serve(ctx, "test", "", ln, h, httpserve.Settings{ReadTimeout: time.Second, WriteTimeout: 5 * time.Second,
			ShutdownTimeout: 5 * time.Second}, slog.New(slog.DiscardHandler), func(a net.Addr) { addr = a; close(started) })
	}()
	<-started
	answered := make(chan string, 1)
	go func() {
		res, err := http.Get("http://" + addr.String())
		if err != nil {
			answered <- err.Error()
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		answered <- string(b)
	}()
	<-inFlight
	cancel()
	if got := <-answered; got != "done" {
		t.Fatalf("the request in progress at the stop got %q, want its answer", got)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := http.Get("http://" + addr.String()); err == nil {
		t.Fatal("still accepting after the drain")
	}
}

// TestListenError names the server and the address.
func TestListenError(t *testing.T) {
	err := httpserve.Serve(t.Context(), "query", "127.0.0.1:99999", nil, http.NotFoundHandler(), httpserve.Settings{}, slog.New(slog.DiscardHandler), nil)
	if err == nil || err.Error()[:len("query: listen 127.0.0.1:99999")] != "query: listen 127.0.0.1:99999" {
		t.Fatalf("listen on a bad address: %v", err)
	}
}
