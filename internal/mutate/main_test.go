package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Every mutation still applies to core/ as it is: each text it replaces
// occurs there exactly once, and the patch changes the file.
func TestMutationsApply(t *testing.T) {
	for _, m := range mutations {
		src, err := os.ReadFile(filepath.Join("..", "..", "core", m.file))
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		got, err := m.plant(bytes.Clone(src))
		if err != nil {
			t.Errorf("%s: %v", m.name, err)
			continue
		}
		if bytes.Equal(got, src) {
			t.Errorf("%s: the patch changes nothing in core/%s", m.name, m.file)
		}
	}
}
