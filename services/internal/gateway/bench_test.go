package gateway_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/touchstream/touchstream/services/internal/gateway"
)

// BenchmarkGatewayBatch500 posts batches of 500 recharge.completed events over 10,000
// customers through the real HTTP handler (a real listener), with the index lookup in
// PostgreSQL and appends to a real JetStream, and reports events/s.
func BenchmarkGatewayBatch500(b *testing.B) {
	e := newEnv(b, envOpts{deps: func(d *gateway.Deps) { d.Log = slog.New(slog.NewTextHandler(io.Discard, nil)) }})
	const size = 500
	at := time.Now().In(shanghai).Format(time.RFC3339Nano)
	body := func(n int) []byte {
		var buf bytes.Buffer
		buf.WriteByte('[')
		for i := range size {
			if i > 0 {
				buf.WriteByte(',')
			}
			id := strconv.Itoa(n*size + i)
			cust := "C-" + strconv.Itoa((n*size+i)*7919%10_000)
			buf.WriteString(`{"specversion":"1.0","id":"b-` + id + `","source":"` + rechargeSrc + `","type":"recharge.completed","subject":"` + cust +
				`","time":"` + at + `","dataschema":"https://touchstream.dev/schemas/recharge.completed/v1","data":{"recharge_id":"R-` + id +
				`","amount":{"fen":5000,"currency":"CNY"},"method":"wechat_pay"}}`)
		}
		buf.WriteByte(']')
		return buf.Bytes()
	}
	client := &http.Client{}
	b.ResetTimer()
	for n := range b.N {
		b.StopTimer()
		payload := body(n)
		b.StartTimer()
		req, _ := http.NewRequest(http.MethodPost, e.url, bytes.NewReader(payload))
		req.Header.Set("Content-Type", ctBatch)
		req.Header.Set("Authorization", "Bearer "+rechargeKey)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
}
