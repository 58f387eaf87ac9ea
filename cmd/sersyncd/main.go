// Command sersyncd replicates a directory tree to rsync daemons or ssh
// targets in real time. See `sersyncd --help`.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
