package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	"github.com/touchstream/touchstream/schemas"
)

// CompareFastDecode decodes b, an event in structured mode, down the fast paths of
// fastdecode.go and down the reference paths, and describes any difference. fast
// reports which fast paths answered ("stored": ReadStored decoded the payload in its
// one pass).
func CompareFastDecode(b []byte) (fast []string, diff error) {
	if took, err := compareReadStored(b); err != nil || took {
		if took {
			fast = append(fast, "stored")
		}
		if err != nil {
			return fast, err
		}
	}
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

var storedValidator = sync.OnceValue(func() *Validator {
	cat, err := DefaultCatalog()
	if err != nil {
		panic(err)
	}
	return NewValidator(cat, DefaultLayout().Partitions, Limits{}, nil)
})

// compareReadStored holds ReadStored to UnmarshalJSON, CheckStored and Decode: the
// same event, schema, error and payload. took reports whether it decoded the payload.
func compareReadStored(b []byte) (took bool, diff error) {
	v := storedValidator()
	var got, want Event
	gs, gp, gerr := v.ReadStored(b, &got, nil)
	var ws *Schema
	werr := want.UnmarshalJSON(b)
	if werr == nil {
		ws, werr = v.CheckStored(&want)
	}
	if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
		return false, fmt.Errorf("ReadStored: error %v, reference %v", gerr, werr)
	}
	if !reflect.DeepEqual(got, want) {
		return false, fmt.Errorf("ReadStored: event %+v, reference %+v", got, want)
	}
	if gerr != nil {
		return false, nil
	}
	if gs != ws {
		return false, fmt.Errorf("ReadStored: schema %s, reference %s", gs.URI, ws.URI)
	}
	if gp == nil {
		return false, nil
	}
	wp, err := Decode(&want)
	if err != nil {
		return true, fmt.Errorf("ReadStored decoded a payload Decode refuses: %v", err)
	}
	if !reflect.DeepEqual(gp, wp) {
		return true, fmt.Errorf("ReadStored: payload %#v, reference %#v", gp, wp)
	}
	return true, nil
}
