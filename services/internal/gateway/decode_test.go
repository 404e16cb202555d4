package gateway

import "testing"

func TestDuplicateKey(t *testing.T) {
	tests := []struct {
		name string
		json string
		want string // pointer of the repeated key; "" none
	}{
		{name: "none", json: `{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}`},
		{name: "top level", json: `{"id":"1","type":"x","id":"2"}`, want: "/id"},
		{name: "nested", json: `{"data":{"amount":{"fen":1,"currency":"CNY","fen":2}}}`, want: "/data/amount/fen"},
		{name: "in an array", json: `{"a":[{"x":1},{"y":1,"y":2}]}`, want: "/a/1/y"},
		{name: "escaped spelling", json: `{"id":"1","\u0069d":"2"}`, want: "/id"},
		{name: "pointer escaping", json: `{"a/b":{"~":1,"~":2}}`, want: "/a~1b/~0"},
		{name: "strings with braces and quotes", json: `{"a":"{\"a\":1,\"a\":2}","b":"]}"}`},
		{name: "many keys", json: `{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":0,"k11":0,"k12":0,"k13":0,"k14":0,"k15":0,"k16":0,"k17":0,"k3":9}`, want: "/k3"},
		{name: "scalars", json: `[1, true, null, "x", -2.5e3]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := duplicateKey([]byte(tt.json))
			if got != tt.want || found != (tt.want != "") {
				t.Errorf("duplicateKey(%s) = %q, %v; want %q", tt.json, got, found, tt.want)
			}
		})
	}
}
