package main

import (
	"maps"
	"slices"
	"testing"
)

func TestParsePhases(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // nil: refused
	}{
		{"login,refresh,me", []string{"login", "me", "refresh"}},
		{"me", []string{"me"}},
		{" refresh , me ", []string{"me", "refresh"}},
		{"", nil},
		{"me,", nil},
		{"argon2", nil},
		{"logins", nil},
	} {
		got, err := parsePhases(tc.in)
		if tc.want == nil {
			if err == nil {
				t.Errorf("parsePhases(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if keys := slices.Sorted(maps.Keys(got)); err != nil || !slices.Equal(keys, tc.want) {
			t.Errorf("parsePhases(%q) = %v, %v; want %v", tc.in, keys, err, tc.want)
		}
	}
}
