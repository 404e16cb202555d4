package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/touchstream/touchstream/schemas"
)

// CompareFastDecode decodes b, an event in structured mode, down the fast paths of
// fastdecode.go and down the reference paths, and describes any difference. fast
// reports which fast paths answered.
func CompareFastDecode(b []byte) (fast []string, diff error) {
	var fw, rw wire
	if fastEnvelope(b, &fw) {
		fast = append(fast, "envelope")
		if err := json.Unmarshal(b, &rw); err != nil {
			return fast, fmt.Errorf("fast envelope decoded what encoding/json refuses: %v", err)
		}
		if !bytes.Equal(fw.Data, rw.Data) {
			return fast, fmt.Errorf("envelope data: fast %q, reference %q", fw.Data, rw.Data)
		}
		data := rw.Data
		fw.Data, rw.Data = nil, nil
		if !reflect.DeepEqual(fw, rw) {
			return fast, fmt.Errorf("envelope: fast %+v, reference %+v", fw, rw)
		}
		rw.Data = data
	} else if err := json.Unmarshal(b, &rw); err != nil {
		return fast, nil
	}
	t, major, ok := schemas.ParseURI(rw.DataSchema)
	if !ok {
		return fast, nil
	}
	fp, ok := NewPayload(t, major)
	if !ok || !fastUnmarshal(rw.Data, fp) {
		return fast, nil
	}
	fast = append(fast, "payload")
	rp, _ := NewPayload(t, major)
	if err := strictUnmarshal(rw.Data, rp); err != nil {
		return fast, fmt.Errorf("fast payload decoded what the strict decoder refuses: %v", err)
	}
	if !reflect.DeepEqual(fp, rp) {
		return fast, fmt.Errorf("payload: fast %#v, reference %#v", fp, rp)
	}
	return fast, nil
}
