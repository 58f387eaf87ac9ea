package daemon

import (
	"strconv"

	"github.com/sersyncd/sersyncd/internal/config"
	"github.com/sersyncd/sersyncd/internal/filter"
	"github.com/sersyncd/sersyncd/internal/rsync"
)

// RsyncTargets builds one target per remote of the source tree src, with
// flt, src's filter: the config's words turned into rsync's
// (internal/rsync knows nothing of the config). hook, when not nil,
// completes each target's options before it is made: what it reports to,
// and its standby.
func RsyncTargets(c *config.Config, src *config.Source, flt *filter.Filter, hook func(*rsync.Options)) []*rsync.Target {
	var ts []*rsync.Target
	for _, r := range src.Remotes {
		t := rsync.Options{
			Binary:  c.Daemon.Rsync, // "" is rsync from PATH
			Source:  src.Path,
			Dest:    c.Destination(r),
			Params:  c.Rsync.CommonParams,
			Port:    c.Rsync.Port,
			Timeout: c.Rsync.Timeout,
			Filter:  flt,
			// sersync (FileSynchronize.cpp) passes --delete only when
			// <delete start="true">, on event pushes and full pushes alike.
			KeepDeleted: !c.Events.Delete,
		}
		if c.Rsync.Auth.Enabled {
			t.PasswordFile = c.Rsync.Auth.PasswordFile
		}
		if c.Rsync.SSH.Enabled {
			t.SSHCommand = c.Rsync.SSH.Command
			if t.SSHCommand == "" {
				t.SSHCommand = config.DefaultSSHCommand
			}
			if t.Port != 0 {
				t.SSHCommand += " -p " + strconv.Itoa(t.Port)
			}
		}
		if hook != nil {
			hook(&t)
		}
		ts = append(ts, rsync.New(t))
	}
	return ts
}
