package core

import "testing"

// FuzzDecodeMembership: DecodeMembership never panics, and what it
// accepts has its members in order and a voter, and survives an encoding
// and a decoding unchanged.
func FuzzDecodeMembership(f *testing.F) {
	for _, m := range []Membership{
		voters(1),
		voters(1, 2, 3),
		{Members: []Member{{ID: 0, Addr: "10.0.0.1:7000"}, {ID: 4, Addr: "h:1", Learner: true}}},
	} {
		b, _ := m.AppendBinary(nil)
		f.Add(b)
	}
	f.Add([]byte{1, 0})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMembership(b)
		if err != nil {
			return
		}
		enc, err := m.AppendBinary(nil)
		if err != nil {
			t.Fatalf("decoded %v from %x, which does not encode: %v", m, b, err)
		}
		if again, err := DecodeMembership(enc); err != nil || !again.Equal(m) {
			t.Fatalf("decoded %v from %x; its encoding %x decodes to %v (%v)", m, b, enc, again, err)
		}
		for i := 1; i < len(m.Members); i++ {
			if m.Members[i].ID <= m.Members[i-1].ID {
				t.Fatalf("members out of order: %v", m)
			}
		}
		if !m.Empty() && len(m.Voters()) == 0 {
			t.Fatalf("no voter: %v", m)
		}
	})
}
