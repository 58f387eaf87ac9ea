package main

import (
	"flag"
	"strings"
)

// sersync parsed its flags with getopt("hdro:n:m:"), so its guides start it
// as `sersync2 -dro /etc/confxml.xml`. These are its one-letter flags that
// sersyncd has too: the ones taking a value, and the switches.
const (
	clusterValueFlags = "on"
	clusterBoolFlags  = "drh"
)

// expandClusters rewrites getopt-style clusters of sersync's one-letter
// flags into separate flags Go's flag package reads: "-dro F" becomes
// "-d -r -o F", "-rn5" "-r -n 5". A word that names a flag of fs ("-db"),
// holds "=", follows a flag that takes a value, or has a letter outside
// the clusters is left as it is, for fs to read or to refuse.
func expandClusters(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || a == "-" || !strings.HasPrefix(a, "-") {
			// The flag package stops at the first word that is no flag.
			return append(out, args[i:]...)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.HasPrefix(a, "--") || fs.Lookup(name) != nil || strings.Contains(name, "=") {
			out = append(out, a)
			if takesValue(fs, name) && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
			continue
		}
		split, ok := splitCluster(name)
		if !ok {
			out = append(out, a)
			continue
		}
		out = append(out, split...)
		if last := split[len(split)-1]; len(last) == 2 && strings.ContainsRune(clusterValueFlags, rune(last[1])) && i+1 < len(args) {
			// The cluster ended with a flag whose value is the next word.
			i++
			out = append(out, args[i])
		}
	}
	return out
}

// splitCluster splits "dro" into "-d", "-r", "-o" and "rn5" into "-r",
// "-n", "5"; ok is false for a letter that is not one of the clusters'.
func splitCluster(name string) (split []string, ok bool) {
	for j := 0; j < len(name); j++ {
		c := name[j]
		switch {
		case strings.IndexByte(clusterBoolFlags, c) >= 0:
			split = append(split, "-"+string(c))
		case strings.IndexByte(clusterValueFlags, c) >= 0:
			split = append(split, "-"+string(c))
			if rest := name[j+1:]; rest != "" {
				split = append(split, rest)
			}
			return split, true
		default:
			return nil, false
		}
	}
	return split, true
}

// takesValue reports whether the flag named name reads the next word.
func takesValue(fs *flag.FlagSet, name string) bool {
	if strings.Contains(name, "=") {
		return false
	}
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}
