package model

import (
	"sync"
	"testing"
)

var bench1M = sync.OnceValue(func() Dataset { return synthChurn(1_000_000, 99) })

func BenchmarkTrainGBT1M(b *testing.B) {
	d := bench1M()
	b.ResetTimer()
	var m *Model
	for b.Loop() {
		var err error
		if m, err = TrainGBT(d, GBTOptions{Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(d.Rows())*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(m.Training.Train.AUC, "train_auc")
}

func BenchmarkTrainLogistic1M(b *testing.B) {
	d := bench1M()
	b.ResetTimer()
	var m *Model
	for b.Loop() {
		var err error
		if m, err = TrainLogistic(d, LogisticOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(d.Rows())*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(m.Training.Iterations), "newton_steps")
}

func BenchmarkPredict(b *testing.B) {
	d := synthChurn(20000, 98)
	lr, err := TrainLogistic(d, LogisticOptions{})
	if err != nil {
		b.Fatal(err)
	}
	gbt, err := TrainGBT(d, GBTOptions{Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range []*Model{lr, gbt} {
		b.Run(string(m.Kind), func(b *testing.B) {
			i := 0
			for b.Loop() {
				_ = m.Predict(d.X[i%len(d.X)])
				i++
			}
		})
	}
}
