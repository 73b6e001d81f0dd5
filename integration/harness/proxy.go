package harness

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy on a loopback port that tests put between a client and a server to
// inject faults: latency on every chunk, cutting every connection, or cutting a connection
// exactly when the server sends a given byte pattern (say PostgreSQL's CommandComplete
// "COMMIT"), so the server has done the work and the client never learns it.
type Proxy struct {
	Addr     string
	upstream string
	ln       net.Listener
	latency  atomic.Int64 // nanoseconds added before forwarding each chunk

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	pattern []byte
	cuts    int // how many more times to cut on pattern
	cutDone chan struct{}
	wg      sync.WaitGroup
}

// NewProxy listens on a free loopback port and forwards to upstream (host:port). It stops
// when tb ends.
func NewProxy(tb testing.TB, upstream string) *Proxy {
	tb.Helper()
	p, err := StartProxy(upstream)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}

// StartProxy is NewProxy for programs without a testing.TB; Close stops it.
func StartProxy(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), upstream: upstream, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	return p, nil
}

// Close stops listening, cuts every connection and waits for the copying to end.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.CutAll()
	p.wg.Wait()
}

// ProxyURL returns databaseURL (postgres:// or redis://) with its host:port replaced by the
// proxy's, and the upstream host:port the proxy should forward to.
func ProxyURL(tb testing.TB, databaseURL string) (upstream string, rewrite func(addr string) string) {
	tb.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil || u.Host == "" {
		tb.Fatalf("proxy: cannot parse %q as a URL", databaseURL)
	}
	return u.Host, func(addr string) string {
		c := *u
		c.Host = addr
		return c.String()
	}
}

func (p *Proxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// SetLatency delays every chunk in both directions by d (0 turns it off).
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// CutAll closes every open connection.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// CutOnServerBytes arms the proxy: the next n times the server sends pattern, the chunk
// holding it is dropped and that connection (both sides) is closed. The returned channel is
// closed after the n-th cut.
func (p *Proxy) CutOnServerBytes(pattern []byte, n int) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pattern, p.cuts, p.cutDone = bytes.Clone(pattern), n, make(chan struct{})
	return p.cutDone
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns[client], p.conns[server] = struct{}{}, struct{}{}
		p.mu.Unlock()
		closeBoth := func() {
			_ = client.Close()
			_ = server.Close()
			p.mu.Lock()
			delete(p.conns, client)
			delete(p.conns, server)
			p.mu.Unlock()
		}
		p.wg.Go(func() { p.pipe(server, client, false); closeBoth() })
		p.wg.Go(func() { p.pipe(client, server, true); closeBoth() })
	}
}

// pipe copies src to dst; fromServer chunks are checked against the armed pattern.
func (p *Proxy) pipe(dst, src net.Conn, fromServer bool) {
	buf := make([]byte, 64<<10)
	var tail []byte // end of the previous chunk, for patterns split across reads
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if fromServer && p.shouldCut(append(tail, chunk...)) {
				return
			}
			if d := time.Duration(p.latency.Load()); d > 0 {
				time.Sleep(d) // the fault being injected: a slow link
			}
			if _, werr := dst.Write(chunk); werr != nil {
				return
			}
			tail = append(tail[:0], chunk[max(0, n-32):]...)
		}
		if err != nil { // EOF or a closed connection: either way this direction is done
			return
		}
	}
}

func (p *Proxy) shouldCut(data []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cuts <= 0 || !bytes.Contains(data, p.pattern) {
		return false
	}
	p.cuts--
	if p.cuts == 0 {
		close(p.cutDone)
	}
	return true
}
