package main

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"time"
)

// (9) a big directory renamed: a few big files and many small ones, about
// s.renameMiB in all, prepared on the source and every target, then renamed
// once. What it costs is the bytes each target received for it (its daemon
// log, or for ssh targets what crossed its proxy, sshd.go) and the time
// until every target has it under the new name only.

const (
	renameBigFiles   = 4
	renameSmallFiles = 2000
	renameSmallSize  = 10 << 10
)

func prepRename(src string, s sizes) error {
	smallBytes := renameSmallFiles * renameSmallSize
	bigSize := (s.renameMiB<<20 - smallBytes) / renameBigFiles
	if bigSize < 1<<20 {
		bigSize = 1 << 20
	}
	rnd := rand.New(rand.NewSource(9))
	buf := make([]byte, bigSize)
	for i := 0; i < renameBigFiles; i++ {
		rnd.Read(buf)
		if err := os.MkdirAll(filepath.Join(src, "tree/big"), 0o755); err != nil {
			return err
		}
		if err := writeFile(src, fmt.Sprintf("tree/big/%d.bin", i), buf); err != nil {
			return err
		}
	}
	for i := 0; i < renameSmallFiles; i++ {
		dir := fmt.Sprintf("tree/small/%02d", i/100)
		if i%100 == 0 {
			if err := os.MkdirAll(filepath.Join(src, dir), 0o755); err != nil {
				return err
			}
		}
		rnd.Read(buf[:renameSmallSize])
		if err := writeFile(src, fmt.Sprintf("%s/%04d", dir, i), buf[:renameSmallSize]); err != nil {
			return err
		}
	}
	return nil
}

func runRename(e *env, c contender, s sizes, r *result) error {
	var before []int64
	sessions0 := 0
	if e.ssh != nil {
		before, sessions0 = e.ssh.received(), e.ssh.sessions()
	}
	var rels []string
	err := filepath.Walk(filepath.Join(e.src, "tree"), func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			rels = append(rels, "renamed"+p[len(filepath.Join(e.src, "tree")):])
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(e.src, "tree"), filepath.Join(e.src, "renamed")); err != nil {
		return err
	}
	// The old name gone, then every path under the new one.
	changed := append([]string{"tree"}, rels...)
	bound := boundOf[r.Workload]
	err = finish(e, c, newPathsChecker(e.src, changed), changed, bound, r)
	r.Metrics["tree_bytes"] = float64(s.renameMiB) * (1 << 20)
	// Pushes still running once the targets are equal (after an mv the
	// push of the new name; a daemon's session logs its bytes at its end)
	// are counted too: wait for them.
	time.Sleep(2 * time.Second)
	if e.ssh != nil {
		for i, n := range e.ssh.received() {
			r.RecvBytes += n - before[i]
		}
		r.Sessions += e.ssh.sessions() - sessions0
	}
	return err
}
