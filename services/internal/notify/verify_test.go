package notify_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/touchstream/touchstream/services/internal/notify"
)

func TestVerify(t *testing.T) {
	secret := []byte(testSecret)
	body := []byte(`{"id":"s1","type":"churn.alert_raised"}`)
	signedAt := time.Unix(1_790_000_000, 0)
	good := notify.Sign(secret, signedAt, body)
	v1 := good[strings.Index(good, "v1="):]
	tests := []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"valid", secret, good, body, signedAt.Add(30 * time.Second), nil},
		{"valid with an unknown scheme beside", secret, good + ",v0=abc", body, signedAt, nil},
		{"valid signed slightly ahead of the receiver's clock", secret, good, body, signedAt.Add(-time.Minute), nil},
		{"other secret", []byte("another secret of sixteen+"), good, body, signedAt, notify.ErrBadSignature},
		{"body changed", secret, good, []byte(`{"id":"s2","type":"churn.alert_raised"}`), signedAt, notify.ErrBadSignature},
		{"timestamp changed", secret, "t=1790000001," + v1, body, signedAt, notify.ErrBadSignature},
		{"stale", secret, good, body, signedAt.Add(6 * time.Minute), notify.ErrStaleSignature},
		{"from the future", secret, good, body, signedAt.Add(-6 * time.Minute), notify.ErrStaleSignature},
		{"empty", secret, "", body, signedAt, notify.ErrMalformedSignature},
		{"no timestamp", secret, v1, body, signedAt, notify.ErrMalformedSignature},
		{"no v1", secret, "t=1790000000", body, signedAt, notify.ErrMalformedSignature},
		{"timestamp not a number", secret, "t=yesterday," + v1, body, signedAt, notify.ErrMalformedSignature},
		{"v1 not hex", secret, "t=1790000000,v1=zz", body, signedAt, notify.ErrMalformedSignature},
		{"v1 truncated", secret, good[:len(good)-2], body, signedAt, notify.ErrMalformedSignature},
		{"not key=value", secret, "t=1790000000;" + v1, body, signedAt, notify.ErrMalformedSignature},
		{"two timestamps", secret, "t=1790000000,t=1790000000," + v1, body, signedAt, notify.ErrMalformedSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := notify.Verify(tt.secret, tt.header, tt.body, tt.now, 5*time.Minute)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzVerify: no header makes Verify panic, and none verifies without the right MAC.
func FuzzVerify(f *testing.F) {
	secret := []byte(testSecret)
	body := []byte(`{"id":"s1"}`)
	at := time.Unix(1_790_000_000, 0)
	good := notify.Sign(secret, at, body)
	mac := good[strings.Index(good, "v1=")+3:]
	f.Add(good)
	f.Add("t=1,v1=00")
	f.Add("t=1790000000,v1=" + mac + ",v1=zz")
	f.Fuzz(func(t *testing.T, header string) {
		if err := notify.Verify(secret, header, body, at, 5*time.Minute); err == nil && !strings.Contains(strings.ToLower(header), mac) {
			t.Errorf("header %q verified without the MAC", header)
		}
	})
}
