package testkit

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS is an embedded nats-server with JetStream, private to one test.
type NATS struct {
	Server *server.Server
	URL    string
	Dir    string // JetStream store directory
}

// StartNATS starts an embedded server on a random loopback port with its store in a
// temporary directory, and shuts it down when the test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	dir := t.TempDir()
	return startNATS(t, dir, -1)
}

func startNATS(t testing.TB, dir string, port int) *NATS {
	t.Helper()
	opts := &server.Options{
		ServerName: "test",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: 8 << 20,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats server not ready after 10s")
	}
	n := &NATS{Server: s, URL: s.ClientURL(), Dir: dir}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return n
}

// Restart shuts the server down and starts it again on the same port and store,
// returning the new server (a clean restart: the store is recovered from disk).
func (n *NATS) Restart(t testing.TB) *NATS {
	t.Helper()
	port := n.Server.Addr().(*net.TCPAddr).Port
	n.Server.Shutdown()
	n.Server.WaitForShutdown()
	return startNATS(t, n.Dir, port)
}

// Connect opens a client connection closed when the test ends.
func (n *NATS) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(n.URL, nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream opens a connection and returns its JetStream context.
func (n *NATS) JetStream(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := n.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}
