package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/services/internal/natsauth"
	"github.com/touchstream/touchstream/testkit"
)

// personalValue is a value planted in the traffic that must never reach a log in
// clear, with how it may be spelled there.
type personalValue struct {
	what  string
	value string
	// digits: the value is a number a log could spell with spaces, dashes, dots,
	// brackets or a country code (+86 138 0013 8000, 138-0013-8000, 13800138000).
	digits bool
}

// The planted values: a name, a phone number in three spellings, an id number, an
// address, and a second customer's name, phone and id number (sent only in refused
// or hostile requests).
var planted = []personalValue{
	{what: "name", value: "欧阳娜娜测"},
	{what: "phone", value: "13800138000", digits: true},
	{what: "id number", value: "11010519491231002X"},
	{what: "address", value: "北京市朝阳区建国路88号"},
	{what: "refused name", value: "司马懿测试"},
	{what: "refused phone", value: "13912345678", digits: true},
	{what: "refused id number", value: "440305198807151234"},
	{what: "poison name", value: "诸葛亮测试"},
	{what: "poison phone", value: "13698765432", digits: true},
}

// leaks returns every line of logs that holds a planted value in clear: as written,
// after JSON unescaping (a JSON log writes 张 as \u5f20 if it likes), and for numbers
// with every separator a human or a formatter might put between the digits removed.
func leaks(logs []byte, values []personalValue) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		forms := []string{line, unescapeJSON(line)}
		for _, v := range values {
			for _, f := range forms {
				hit := strings.Contains(strings.ToUpper(f), strings.ToUpper(v.value))
				if v.digits {
					hit = hit || strings.Contains(digitsOnly(f), v.value)
				}
				if hit {
					out = append(out, fmt.Sprintf("line %d: %s %q: %.300s", n, v.what, v.value, line))
					break
				}
			}
		}
	}
	return out
}

// unescapeJSON is the text of every string of a JSON log line, keys and values; a
// line that is not JSON is returned as it is.
func unescapeJSON(line string) string {
	var v any
	if json.Unmarshal([]byte(line), &v) != nil {
		return line
	}
	var b strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			b.WriteString(x)
			b.WriteByte(' ')
		case map[string]any:
			for k, e := range x {
				b.WriteString(k)
				b.WriteByte(' ')
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		default:
			fmt.Fprint(&b, x, " ")
		}
	}
	walk(v)
	return b.String()
}

// digitsOnly drops the separators that may sit between the digits of a phone number.
func digitsOnly(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '-', '.', '(', ')', '+', '_', '/', '\u00a0':
			return -1
		}
		return r
	}, s)
}

// TestLeakScannerFindsPlantedLines proves the scanner can fail: each planted spelling
// is found, a line without one is not.
func TestLeakScannerFindsPlantedLines(t *testing.T) {
	found := []string{
		`time=2026-12-01T10:00:00Z level=INFO msg="lookup" phone="+86 138 0013 8000"`,
		`{"level":"DEBUG","msg":"x","phone":"138-0013-8000"}`,
		`{"level":"WARN","msg":"refused","error":"'13800138000' does not match"}`,
		`{"msg":"customer","name":"\u6b27\u9633\u5a1c\u5a1c\u6d4b"}`,
		`level=ERROR msg="apply failed" error="id_number 11010519491231002x"`,
		`{"msg":"address","detail":{"a":["北京市朝阳区建国路88号SOHO"]}}`,
		`msg="poison" data="{\"name\":\"诸葛亮测试\",\"phone\":\"+86 (136) 9876-5432\"}"`,
	}
	for _, line := range found {
		if got := leaks([]byte(line+"\n"), planted); len(got) == 0 {
			t.Errorf("the scanner missed %s", line)
		}
	}
	clean := `{"level":"INFO","msg":"http request","request_id":"1381380000","channel":"store","status":422,"events":1,"customer_id":"C-LS-1"}`
	if got := leaks([]byte(clean+"\n"), planted); len(got) != 0 {
		t.Errorf("the scanner flagged a clean line: %v", got)
	}
}

// TestLogsHoldNoPersonalData runs the real binary, `touchstream run` (every service in
// one process, each on its own NATS identity), with debug logging in JSON, drives
// every service through its success and error paths with personal values in the
// traffic, and scans all the output for them in clear.
func TestLogsHoldNoPersonalData(t *testing.T) {
	bin := testkit.BuildBinary(t)
	dir := t.TempDir()
	deploy, err := filepath.Abs(filepath.Join("..", "..", "..", "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	_, dbURL := testkit.Pool(t)

	// A webhook that always fails: the notifier retries, logs and parks.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	t.Cleanup(hook.Close)
	hooks := filepath.Join(dir, "webhooks.json")
	if err := os.WriteFile(hooks, fmt.Appendf(nil, `{"webhooks": [{"name": "desk", "url": %q, "secret_env": "LOGSCAN_DESK_SECRET", "start": "all"}]}`, hook.URL), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LOGSCAN_DESK_SECRET", "logscan-secret-0123456789")

	port := func() string { return "127.0.0.1:" + strconv.Itoa(testkit.FreePort(t)) }
	gwAddr, qAddr, rAddr, admAddr, natsPort := port(), port(), port(), port(), testkit.FreePort(t)
	data := filepath.Join(dir, "data")
	proc := testkit.NewProcess(t, "run", bin, "run", "--deploy-dir", deploy, "--data-dir", data, "--database-url", dbURL,
		"--nats-port", strconv.Itoa(natsPort), "--gateway-addr", gwAddr, "--query-addr", qAddr, "--redeem-addr", rAddr,
		"--admin-addr", admAddr, "--log-level", "debug", "--log-format", "json", "--rate", "0", "--webhooks", hooks)
	proc.Start()
	testkit.WaitHTTP(t, "http://"+admAddr+"/readyz")

	// The seeds were created on first start, readable by their owner only.
	for _, name := range []string{natsauth.Gateway, natsauth.Projector, "channel-store"} {
		st, err := os.Stat(filepath.Join(data, "secrets", "nats", name+".nk"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("seed of %s: %v, mode %v; want 0600", name, err, st.Mode())
		}
	}

	const customer, other = "C-LS-1", "C-LS-2"
	at := time.Now().In(time.FixedZone("CST", 8*3600)).Format(time.RFC3339)
	envelope := func(id, subject, typ string, data string) string {
		return `{"specversion":"1.0","id":"` + id + `","source":"urn:touchstream:channel:store","type":"` + typ + `","subject":"` + subject +
			`","time":"` + at + `","dataschema":"https://touchstream.dev/schemas/` + typ + `/v1","data":` + data + `}`
	}
	registration := func(name, phone, idNumber, address string) string {
		return `{"name":"` + name + `","phone":"` + phone + `","id_type":"resident_id","id_number":"` + idNumber + `","address":"` + address +
			`","customer_type":"individual","region":"CN-BJ","plan":{"id":"4G-58","kind":"prepaid","monthly_fee":{"fen":5800,"currency":"CNY"}}}`
	}
	ingest := func(key, body string) (int, string) {
		return call(t, http.MethodPost, "http://"+gwAddr+"/v1/events", key, "application/cloudevents+json", body)
	}
	expect := func(what string, gotCode int, body string, wantCode int) {
		t.Helper()
		if gotCode != wantCode {
			t.Fatalf("%s: status %d, want %d: %.500s", what, gotCode, wantCode, body)
		}
		t.Logf("%s: %d", what, gotCode)
	}

	// Gateway and keys: a stored registration, sealed with the customer's key.
	code, body := ingest("dev-store-key", envelope("ls-1", customer, "customer.registered", registration("欧阳娜娜测", "+8613800138000", "11010519491231002X", "北京市朝阳区建国路88号")))
	expect("stored registration", code, body, 200)
	// The NATS door, as the store channel's own identity.
	nc := connectAs(t, "nats://127.0.0.1:"+strconv.Itoa(natsPort), filepath.Join(data, "secrets", "nats", "channel-store.nk"), natsauth.Inbox("store"))
	m, err := nc.Request(events.ChannelSubject("store", "customer.updated"), []byte(envelope("ls-2", customer, "customer.updated",
		`{"phone":"+8613800138000","address":"北京市朝阳区建国路88号"}`)), 10*time.Second)
	if err != nil {
		t.Fatalf("NATS door: %v", err)
	}
	if !bytes.Contains(m.Data, []byte(`"status":200`)) {
		t.Fatalf("NATS door: %s, want stored", m.Data)
	}
	t.Log("NATS door: stored")
	// Validation failures with personal values in the refused fields.
	code, body = ingest("dev-store-key", envelope("ls-3", other, "customer.registered", registration("司马懿测试", "tel 139-1234-5678", "440305198807151234", "x")))
	expect("refused phone", code, body, 422)
	code, body = ingest("dev-store-key", envelope("ls-4", other, "customer.registered", strings.Replace(registration("司马懿测试", "+8613912345678", "440305198807151234", "x"), `"region":"CN-BJ"`, `"region":"司马懿测试 13912345678"`, 1)))
	expect("refused region", code, body, 422)
	// Duplicate keys, an invalid UTF-8 tail, a NUL: hostile input with personal data.
	code, body = ingest("dev-store-key", envelope("ls-5", other, "customer.registered", `{"name":"司马懿测试","name":"13912345678"}`))
	expect("duplicate key", code, body, 422)
	code, body = ingest("dev-store-key", envelope("ls-6", other, "customer.registered", `{"name":"司马懿测试\u0000","phone":"13912345678"}`))
	expect("NUL", code, body, 422)
	// An unknown channel key.
	code, body = ingest("dev-nobody-key", envelope("ls-7", other, "customer.registered", registration("司马懿测试", "+8613912345678", "440305198807151234", "x")))
	expect("unknown key", code, body, 401)
	// A type the channel may not write, and a body that is not JSON with a phone in it.
	code, body = ingest("dev-store-key", strings.Replace(envelope("ls-8", other, "points.redeemed", `{"phone":"13912345678"}`), "points.redeemed/v1", "x", 1))
	expect("forbidden type", code, body, 403)
	code, body = ingest("dev-store-key", `{"id": 13912345678 司马懿测试}`)
	expect("not JSON", code, body, 400)

	// A poison event, appended as the gateway's identity without sealing: the
	// projections refuse its stored form and park it.
	gw := connectAs(t, "nats://127.0.0.1:"+strconv.Itoa(natsPort), filepath.Join(data, "secrets", "nats", natsauth.Gateway+".nk"), natsauth.Inbox(natsauth.Gateway))
	js, err := jetstream.New(gw)
	if err != nil {
		t.Fatal(err)
	}
	poison := envelope("ls-poison", "C-LS-3", "customer.registered", registration("诸葛亮测试", "+86 136 9876 5432", "11010519491231002X", "北京市朝阳区建国路88号"))
	if _, err := js.Publish(t.Context(), events.DefaultLayout().Subject(events.Partition("C-LS-3", 64), "customer.registered"), []byte(poison)); err != nil {
		t.Fatalf("publish the poison event: %v", err)
	}

	// Projector and query: the customer folded, then read, searched, not found.
	q := "http://" + qAddr
	waitStatus(t, http.MethodGet, q+"/v1/customers/"+customer, "dev-supervisor-token", 200)
	code, body = call(t, http.MethodGet, q+"/v1/customers/"+customer, "dev-supervisor-token", "", "")
	expect("profile in clear for a supervisor", code, body, 200)
	if !strings.Contains(body, "欧阳娜娜测") {
		t.Fatalf("the supervisor's profile does not show the name: the traffic did not reach the read model: %.500s", body)
	}
	code, body = call(t, http.MethodGet, q+"/v1/customers?phone="+url.QueryEscape("+8613800138000"), "dev-supervisor-token", "", "")
	expect("phone search", code, body, 200)
	if !strings.Contains(body, customer) {
		t.Errorf("the phone search did not find %s: %.300s", customer, body)
	}
	code, body = call(t, http.MethodGet, q+"/v1/customers?phone="+url.QueryEscape("13912345678"), "dev-agent-token", "", "")
	expect("phone search, no match", code, body, 200)
	code, body = call(t, http.MethodGet, q+"/v1/customers/NOBODY-1", "dev-agent-token", "", "")
	expect("unknown customer", code, body, 404)
	code, body = call(t, http.MethodGet, q+"/v1/customers?phone="+url.QueryEscape("not a phone 13912345678"), "dev-agent-token", "", "")
	expect("malformed phone", code, body, 400)

	// Redeem: a refusal (no points).
	code, body = call(t, http.MethodPost, "http://"+rAddr+"/v1/loyalty/members/"+customer+"/redemptions", "", "application/json",
		`{"idempotency_key":"ls-r1","points":999999,"partner":"cinema","item":"ticket"}`)
	expect("redemption refused", code, body, 409)

	// Ops: the poison event is parked.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body = call(t, http.MethodGet, "http://"+admAddr+"/v1/ops/dead-letters", "dev-operator-token", "", "")
		if code == 200 && strings.Contains(body, "ls-poison") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the poison event is not parked after 30s: %d %.500s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Log("poison event parked")

	proc.Stop()
	logs, err := os.ReadFile(proc.Log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	})
	// The run really went through the services: their debug and error lines are there.
	for _, want := range []string{`"service":"gateway"`, `"service":"keys"`, `"service":"projector"`, `"service":"query"`,
		`"service":"redeem"`, `"service":"notify"`, `"service":"clock"`, `"status":422`, `"status":401`} {
		if !bytes.Contains(logs, []byte(want)) {
			t.Errorf("the log has no %s: the scan would prove nothing about it", want)
		}
	}
	if bytes.Contains(logs, []byte("Permissions Violation")) {
		t.Errorf("a service was refused by its NATS permissions:\n%s", grep(logs, "Permissions Violation"))
	}
	found := leaks(logs, planted)
	for _, f := range found {
		t.Error(f)
	}
	t.Logf("scanned %d bytes, %d lines of log: %d leaks", len(logs), bytes.Count(logs, []byte("\n")), len(found))
}

// call sends a request with a bearer token (when given) and returns the answer.
func call(t *testing.T, method, u, token, contentType, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitStatus waits up to 30s until u answers want.
func waitStatus(t *testing.T, method, u, token string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := call(t, method, u, token, "", "")
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: %d after 30s, want %d: %.300s", method, u, code, want, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// connectAs connects with an identity's seed file and inbox prefix.
func connectAs(t *testing.T, url, seed, inbox string) *nats.Conn {
	t.Helper()
	auth, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, auth, nats.CustomInboxPrefix(inbox))
	if err != nil {
		t.Fatalf("connect with %s: %v", seed, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// grep returns the lines of b holding s.
func grep(b []byte, s string) string {
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
