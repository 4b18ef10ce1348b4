//go:build !unix

package secret

// socketPathTakenBy finds nothing where there are no Unix owners and
// modes to read.
func socketPathTakenBy(string, int) string { return "" }
