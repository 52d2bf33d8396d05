// Package cli holds what the commands in cmd/ share: flag types.
package cli

import "strings"

// List is a flag of comma-separated values, e.g. -cors-origins
// "https://a.example,https://b.example"; empty entries are dropped.
type List []string

// String implements [flag.Value].
func (l *List) String() string { return strings.Join(*l, ",") }

// Set implements [flag.Value].
func (l *List) Set(s string) error {
	*l = nil
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*l = append(*l, f)
		}
	}
	return nil
}
