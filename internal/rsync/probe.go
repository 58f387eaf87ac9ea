package rsync

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Probe connects to the target's rsync daemon port, or its ssh port, and
// hangs up: far cheaper than an rsync, and enough to see a target that was
// down answer again. An ssh command that sets its own port or host alias
// (not userDefinedPort) may make the probe miss; then the target is only
// retried on its backoff, as without probes.
func (t *Target) Probe(ctx context.Context) error {
	addr, err := t.probeAddr()
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("probe %s: %w", t.Name(), err)
	}
	return conn.Close()
}

// probeAddr is host:port of Dest ("[user@]host::module" for a daemon,
// "[user@]host:path" over ssh; an IPv6 host in brackets).
func (t *Target) probeAddr() (string, error) {
	rest := t.opt.Dest
	// The user part may hold anything but the host holds no '@'.
	if i := strings.LastIndexByte(hostPart(rest), '@'); i >= 0 {
		rest = rest[i+1:]
	}
	host := hostPart(rest)
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return "", fmt.Errorf("probe %s: no host in the destination", t.Name())
	}
	port := t.opt.Port
	if port == 0 {
		port = 873
		if t.opt.SSHCommand != "" {
			port = 22
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// hostPart is dest up to the ':' that ends its host, brackets respected.
func hostPart(dest string) string {
	from := 0
	if i := strings.IndexByte(dest, '['); i >= 0 {
		if j := strings.IndexByte(dest[i:], ']'); j >= 0 {
			from = i + j
		}
	}
	if i := strings.IndexByte(dest[from:], ':'); i >= 0 {
		return dest[:from+i]
	}
	return dest
}
