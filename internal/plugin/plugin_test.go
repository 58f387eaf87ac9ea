package plugin

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/sersyncd/sersyncd/internal/config"
)

// testTuning is what the tests start plugins with: a generous Close, as
// they wait for the drain, not for the limit.
var testTuning = tuning{closeTimeout: 20 * time.Second}

// hostile names: each must reach the command as one argument, unchanged.
var hostile = []string{
	"plain",
	"with space",
	"-rf",
	"--help",
	"$(touch PWNED)",
	"`touch PWNED`",
	"semi;colon & amp | pipe",
	"new\nline",
	`quote'double"`,
	`back\slash`,
	"glob*?[a]",
	"ünïcödé",
	"#hash",
	"dir/sub file",
}

func testConfig(t *testing.T, root string) *config.Config {
	t.Helper()
	return &config.Config{
		LocalPath: root,
		Remotes:   []config.Remote{{IP: "127.0.0.1", Name: "first"}, {IP: "127.0.0.1", Name: "second"}},
	}
}

const (
	firstTarget  = "127.0.0.1::first"
	secondTarget = "127.0.0.1::second"
)

func newLogger() (*logrus.Logger, *logtest.Hook) {
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	return log, hook
}

func commandPlugin(t *testing.T, root string, cp config.CommandPlugin) *Plugins {
	t.Helper()
	return commandPluginTuned(t, root, cp, testTuning)
}

func commandPluginTuned(t *testing.T, root string, cp config.CommandPlugin, tune tuning) *Plugins {
	t.Helper()
	cfg := testConfig(t, root)
	cfg.Plugin = config.SersyncPlugin{Enabled: true, Name: "command"}
	cfg.Command = &cp
	log, _ := newLogger()
	p, err := newPlugins(cfg, log, tune)
	if err != nil {
		t.Fatal(err)
	}
	if p == nil {
		t.Fatal("New returned nil for an enabled command plugin")
	}
	t.Cleanup(func() { p.Close() })
	return p.(*Plugins)
}

// shQuote quotes s for the prefix attribute's word splitting.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func readNULs(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		t.Fatal(err)
	}
	got := strings.Split(string(b), "\x00")
	return got[:len(got)-1]
}

func abs(root string, rel []string) []string {
	out := make([]string, len(rel))
	for i, r := range rel {
		out[i] = root + "/" + r
	}
	return out
}

func TestCommandRunsOncePerPath(t *testing.T) {
	tests := []struct {
		name   string
		push   func(p *Plugins)
		expect []string // relative paths the command must have seen, once each
	}{
		{"hostile names", func(p *Plugins) { p.Pushed(firstTarget, hostile, 0, nil) }, hostile},
		{"split over pushes", func(p *Plugins) {
			p.Pushed(firstTarget, hostile[:3], 0, nil)
			p.Pushed(firstTarget, hostile[3:], 0, nil)
		}, hostile},
		{"second target ignored", func(p *Plugins) {
			p.Pushed(secondTarget, []string{"other"}, 0, nil)
			p.Pushed(firstTarget, []string{"mine"}, 0, nil)
		}, []string{"mine"}},
		{"failed push ignored", func(p *Plugins) {
			p.Pushed(firstTarget, []string{"failed"}, 0, errors.New("rsync exit 10"))
			p.Pushed(firstTarget, []string{"ok"}, 0, nil)
		}, []string{"ok"}},
		{"full push ignored", func(p *Plugins) {
			p.Pushed(firstTarget, []string{"."}, 0, nil)
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			root := filepath.Join(dir, "root")
			out := filepath.Join(dir, "out")
			// "$1" is the path only if sersyncd supplied $0.
			p := commandPlugin(t, root, config.CommandPlugin{
				Prefix: "/bin/sh -c " + shQuote(`printf "%s\0" "$1" >> `+shQuote(out)),
			})
			tt.push(p)
			p.Close()
			got := readNULs(t, out)
			want := abs(root, tt.expect)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("command saw %q\nwant %q", got, want)
			}
			if p.Failures() != 0 {
				t.Errorf("Failures() = %d, want 0", p.Failures())
			}
			if _, err := os.Stat("PWNED"); err == nil {
				t.Error("a name was run as a command")
			}
		})
	}
}

func TestCommandPlainBinary(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"dir"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := commandPlugin(t, root, config.CommandPlugin{Prefix: "/usr/bin/touch", Suffix: ""})
	p.Pushed(firstTarget, hostile, 0, nil)
	p.Close()
	for _, name := range hostile {
		if _, err := os.Stat(filepath.Join(root, name)); err != nil {
			t.Errorf("touch did not make %q: %v", name, err)
		}
	}
	if p.Failures() != 0 {
		t.Errorf("Failures() = %d, want 0", p.Failures())
	}
}

func TestCommandSuffixAndShellDollar0(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	// $0 given by the user: nothing added, the path is $1, the suffix $2.
	p := commandPlugin(t, "/srv", config.CommandPlugin{
		Prefix: "bash -c " + shQuote(`printf "%s\0" "$0" "$1" "$2" >> `+shQuote(out)) + " myname",
		Suffix: "'the suffix'",
	})
	p.Pushed(firstTarget, []string{"a b"}, 0, nil)
	p.Close()
	got := readNULs(t, out)
	want := []string{"myname", "/srv/a b", "the suffix"}
	if !slices.Equal(got, want) {
		t.Errorf("argv %q, want %q", got, want)
	}
}

func TestNeedsDollar0(t *testing.T) {
	tests := []struct {
		prefix string
		want   bool
	}{
		{"/bin/sh", false}, // sersync's stock: runs the changed file as a script
		{"/bin/sh -c 'echo'", true},
		{"sh -c 'echo' name", false},
		{"bash -lc 'echo'", true},
		{"/usr/bin/zsh -ec x", true},
		{"dash --norc -c x", true},
		{"ksh -c", true},
		{"/usr/bin/python3 -c 'print(1)'", false},
		{"/bin/sh --command x", false},
		{"/bin/shx -c x", false},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			words, err := splitWords(tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			if got := needsDollar0(words); got != tt.want {
				t.Errorf("needsDollar0(%q) = %v, want %v", words, got, tt.want)
			}
		})
	}
}

func TestCommandIncludeFilter(t *testing.T) {
	tests := []struct {
		name     string
		filterOn bool
		includes []string
		want     []string
	}{
		{"filter off: every path", false, []string{`\.php$`}, []string{"a.php", "b.txt", "lib/c.php", "lib.php/d.txt", "x.sh"}},
		// sersync's stock includes, matched against the whole absolute path.
		{"stock php and sh", true, []string{`(.*)\.php`, `(.*)\.sh`}, []string{"a.php", "lib/c.php", "x.sh"}},
		{"whole path, not a search", true, []string{`\.php`, `lib`}, nil},
		{"absolute path below a directory", true, []string{`/r/lib/.*`}, []string{"lib/c.php"}},
		{"no includes: nothing", true, nil, nil},
	}
	pushed := []string{"a.php", "b.txt", "lib/c.php", "lib.php/d.txt", "x.sh"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			p := commandPlugin(t, "/r", config.CommandPlugin{
				Prefix:        "sh -c " + shQuote(`printf "%s\0" "$1" >> `+shQuote(out)),
				FilterEnabled: tt.filterOn,
				Includes:      tt.includes,
			})
			p.Pushed(firstTarget, pushed, 0, nil)
			p.Close()
			got := readNULs(t, out)
			slices.Sort(got)
			want := abs("/r", tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("command saw %q, want %q", got, want)
			}
		})
	}
}

func TestCommandFailures(t *testing.T) {
	tune := testTuning
	tune.commandTimeout = 300 * time.Millisecond
	tests := []struct {
		name        string
		prefix      string
		ignoreError bool
		want        int
	}{
		{"exit 1 counted", "/bin/false", false, 3},
		{"exit 1 ignored", "/bin/false", true, 0},
		{"not found counted", "/nonexistent/sersyncd-test-command", false, 3},
		{"timeout counted", "/bin/sh -c 'sleep 5'", false, 3},
		{"success", "/bin/true", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := commandPluginTuned(t, "/r", config.CommandPlugin{Prefix: tt.prefix, IgnoreError: tt.ignoreError}, tune)
			start := time.Now()
			p.Pushed(firstTarget, []string{"a", "b", "c"}, 0, nil)
			if d := time.Since(start); d > 100*time.Millisecond {
				t.Errorf("Pushed blocked for %s", d)
			}
			p.Close()
			if got := p.Failures(); got != tt.want {
				t.Errorf("Failures() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestPushedNeverBlocks(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	release := filepath.Join(dir, "go")
	// Every run waits until the test lets it go: Pushed must not.
	p := commandPlugin(t, "/r", config.CommandPlugin{
		Prefix: "sh -c " + shQuote(`while [ ! -e `+shQuote(release)+` ]; do sleep 0.01; done; printf "%s\0" "$1" >> `+shQuote(out)),
	})
	var want []string
	start := time.Now()
	for i := range 200 {
		rel := "f" + strconv.Itoa(i)
		want = append(want, rel)
		p.Pushed(firstTarget, []string{rel}, 0, nil)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("200 pushes took %s: Pushed waits for the command", d)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p.Close()
	got := readNULs(t, out)
	slices.Sort(got)
	want = abs("/r", want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%d runs, want %d (none dropped)", len(got), len(want))
	}
}

func TestNewAndCheck(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(c *config.Config)
		wantNil bool
		wantErr string
		wantLog string
	}{
		{"no plugin", func(c *config.Config) {}, true, "", ""},
		{"section without start", func(c *config.Config) {
			c.Command = &config.CommandPlugin{Prefix: "/bin/true"}
		}, true, "", ""},
		{"started without section", func(c *config.Config) {
			c.Plugin = config.SersyncPlugin{Enabled: true, Name: "command"}
		}, true, "", ""},
		{"refreshCDN", func(c *config.Config) {
			c.Plugin = config.SersyncPlugin{Enabled: true, Name: "refreshCDN"}
			c.RefreshCDN = &config.RefreshCDNPlugin{}
		}, true, "", RefreshCDNWarning},
		{"empty prefix", func(c *config.Config) {
			c.Plugin = config.SersyncPlugin{Enabled: true, Name: "command"}
			c.Command = &config.CommandPlugin{Prefix: "  "}
		}, true, "is empty", ""},
		{"shell operator", func(c *config.Config) {
			c.Plugin = config.SersyncPlugin{Enabled: true, Name: "command"}
			c.Command = &config.CommandPlugin{Prefix: "/bin/echo >/tmp/x"}
		}, true, "shell operator", ""},
		{"unbalanced quote", func(c *config.Config) {
			c.Plugin = config.SersyncPlugin{Enabled: true, Name: "command"}
			c.Command = &config.CommandPlugin{Prefix: "/bin/echo", Suffix: "'x"}
		}, true, "unbalanced", ""},
		{"socket without hosts", func(c *config.Config) {
			c.Plugin = config.SersyncPlugin{Enabled: true, Name: "socket"}
			c.Socket = &config.SocketPlugin{}
		}, true, "deshost", ""},
		{"socket", func(c *config.Config) {
			c.Plugin = config.SersyncPlugin{Enabled: true, Name: "socket"}
			c.Socket = &config.SocketPlugin{Hosts: []config.HostPort{{IP: "127.0.0.1", Port: 1}}}
		}, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, "/r")
			tt.mod(cfg)
			log, hook := newLogger()
			p, err := newPlugins(cfg, log, testTuning)
			if cerr := Check(cfg); (cerr == nil) != (err == nil) {
				t.Errorf("Check = %v but New = %v", cerr, err)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("New error = %v, want one containing %q", err, tt.wantErr)
			}
			if (p == nil) != tt.wantNil {
				t.Errorf("New = %v, want nil: %v", p, tt.wantNil)
			}
			if p != nil {
				p.Close()
			}
			if tt.wantLog != "" {
				found := false
				for _, e := range hook.AllEntries() {
					if e.Message == tt.wantLog && e.Level == logrus.WarnLevel {
						found = true
					}
				}
				if !found {
					t.Errorf("no warning %q", tt.wantLog)
				}
			}
		})
	}
}

// lineServer accepts connections on addr and sends each line it reads on lines.
type lineServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func listenLines(t *testing.T, addr string, lines chan<- string) *lineServer {
	t.Helper()
	var ln net.Listener
	var err error
	// The port was just freed; give the kernel a moment if it disagrees.
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &lineServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					lines <- strings.TrimSuffix(l, "\n")
				}
			}()
		}
	}()
	return s
}

// stop closes the listener and every connection: the host goes down.
func (s *lineServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func expectLines(t *testing.T, lines <-chan string, want ...string) {
	t.Helper()
	var got []string
	timeout := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case l := <-lines:
			got = append(got, l)
		case <-timeout:
			t.Fatalf("received %q, want %q", got, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("received %q, want %q", got, want)
	}
}

func TestSocketDeliversAndReconnects(t *testing.T) {
	tune := testTuning
	tune.socketBackoffMin, tune.socketBackoffMax = 20*time.Millisecond, 200*time.Millisecond

	lines := make(chan string, 1000)
	srv := listenLines(t, "127.0.0.1:0", lines)
	addr := srv.ln.Addr().(*net.TCPAddr)

	cfg := testConfig(t, "/data/www")
	cfg.Plugin = config.SersyncPlugin{Enabled: true, Name: "socket"}
	cfg.Socket = &config.SocketPlugin{LocalPath: "/data/www", Hosts: []config.HostPort{{IP: "127.0.0.1", Port: addr.Port}}}
	log, _ := newLogger()
	pl, err := newPlugins(cfg, log, tune)
	if err != nil {
		t.Fatal(err)
	}
	p := pl.(*Plugins)
	defer p.Close()

	p.Pushed(firstTarget, []string{"a", "dir/b c"}, 0, nil)
	p.Pushed(secondTarget, []string{"not-sent"}, 0, nil)
	p.Pushed(firstTarget, []string{"failed"}, 0, errors.New("exit 10"))
	p.Pushed(firstTarget, []string{".", "new\nline"}, 0, nil)
	expectLines(t, lines, "/data/www/a", "/data/www/dir/b c", `/data/www/new\nline`)

	srv.stop()
	time.Sleep(100 * time.Millisecond) // the plugin sees the peer gone
	p.Pushed(firstTarget, []string{"while-down-1", "while-down-2"}, 0, nil)
	time.Sleep(300 * time.Millisecond) // a few failed dials
	srv = listenLines(t, addr.String(), lines)
	defer srv.stop()
	expectLines(t, lines, "/data/www/while-down-1", "/data/www/while-down-2")
	p.Pushed(firstTarget, []string{"after"}, 0, nil)
	expectLines(t, lines, "/data/www/after")
}

func TestSocketQueueBound(t *testing.T) {
	log, _ := newLogger()
	h := &hostSender{root: "/r", log: log, wake: make(chan struct{}, 1), tune: tuning{socketQueueMax: 5}.withDefaults()}
	for i := range 8 {
		h.enqueue([]string{strconv.Itoa(i)})
	}
	batch, head, _ := h.peek()
	if want := []string{"/r/3", "/r/4", "/r/5", "/r/6", "/r/7"}; !slices.Equal(batch, want) {
		t.Fatalf("queue %q, want the newest %q", batch, want)
	}
	h.enqueue([]string{"8", "9"}) // drops 3 and 4, which peek returned
	h.commit(head, len(batch))
	if batch, _, _ := h.peek(); !slices.Equal(batch, []string{"/r/8", "/r/9"}) {
		t.Fatalf("after commit: %q", batch)
	}
	if h.dropped != 0 {
		t.Errorf("dropped = %d after a send, want reset", h.dropped)
	}
}

func TestSocketCloseWhileHostDown(t *testing.T) {
	// A port with no listener: every dial fails and the backoff grows.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := testConfig(t, "/r")
	cfg.Plugin = config.SersyncPlugin{Enabled: true, Name: "socket"}
	cfg.Socket = &config.SocketPlugin{Hosts: []config.HostPort{{IP: "127.0.0.1", Port: port}}}
	log, hook := newLogger()
	p, err := newPlugins(cfg, log, testTuning)
	if err != nil {
		t.Fatal(err)
	}
	p.Pushed(firstTarget, []string{"a", "b"}, 0, nil)
	time.Sleep(500 * time.Millisecond) // a few failed dials: the plugin waits in a backoff
	start := time.Now()
	p.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %s with the host down; it must not wait out the backoff", d)
	}
	found := false
	for _, e := range hook.AllEntries() {
		found = found || e.Message == "stopping: 2 paths not sent"
	}
	if !found {
		t.Error(`no "stopping: 2 paths not sent" warning`)
	}
	p.Pushed(firstTarget, []string{"after close"}, 0, nil) // ignored, no panic
}
