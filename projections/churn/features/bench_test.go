package features

import (
	"os"
	"testing"
)

// BenchmarkApply folds events of random histories into one state each.
func BenchmarkApply(b *testing.B) {
	evs := stream(1, 4096)
	b.ReportAllocs()
	var s State
	for i := 0; b.Loop(); i++ {
		if i%len(evs) == 0 {
			s = State{}
		}
		if err := s.Apply(evs[i%len(evs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshotScore takes a snapshot and scores it under the deployed rules.
func BenchmarkSnapshotScore(b *testing.B) {
	raw, err := os.ReadFile(deployRules)
	if err != nil {
		b.Fatal(err)
	}
	sc, err := Load(raw)
	if err != nil {
		b.Fatal(err)
	}
	var s State
	for _, ev := range stream(2, 2000) {
		if err := s.Apply(ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		sc.Score(s.Snapshot(s.Now))
	}
}
