package features

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Days are a state's daily buckets, ascending by day. Their JSON form is packed (a
// base64 string of varints, about a tenth of the object form's size): a customer's
// state is read and written with every batch that touches it, and its buckets are
// most of it. Unmarshal also reads the object form.
type Days []Day

// packed form: the byte 1, then per bucket: the day's distance from the previous
// one (the first: the day itself) as a uvarint, a uvarint bit set of the fields
// present, and each field present in declaration order: integers as zigzag varints,
// DataMB as its 8 IEEE 754 bytes, little-endian.
const packedVersion = 1

const (
	fSpend = 1 << iota
	fVoice
	fData
	fDropped
	fComplaints
	fCare
	fRetention
	fIncidents
	fDowngrades
)

// MarshalJSON packs the buckets.
func (ds Days) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 1+len(ds)*12)
	b = append(b, packedVersion)
	prev := int32(0)
	for i, d := range ds {
		if i > 0 && d.Day <= prev {
			return nil, fmt.Errorf("days: day %d after %d: not ascending", d.Day, prev)
		}
		b = binary.AppendUvarint(b, uint64(uint32(d.Day-prev)))
		prev = d.Day
		var set uint64
		ints := [...]struct {
			bit uint64
			v   int64
		}{{fSpend, d.SpendFen}, {fVoice, d.VoiceMinutes}, {fDropped, d.Dropped}, {fComplaints, int64(d.Complaints)}, {fCare, int64(d.Care)},
			{fRetention, int64(d.Retention)}, {fIncidents, int64(d.Incidents)}, {fDowngrades, int64(d.Downgrades)}}
		for _, f := range ints {
			if f.v != 0 {
				set |= f.bit
			}
		}
		if d.DataMB != 0 {
			set |= fData
		}
		b = binary.AppendUvarint(b, set)
		for _, f := range ints[:2] {
			if set&f.bit != 0 {
				b = binary.AppendVarint(b, f.v)
			}
		}
		if set&fData != 0 {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(d.DataMB))
		}
		for _, f := range ints[2:] {
			if set&f.bit != 0 {
				b = binary.AppendVarint(b, f.v)
			}
		}
	}
	// Base64 needs no JSON escaping: the string is quoted as it is.
	out := make([]byte, 0, base64.RawStdEncoding.EncodedLen(len(b))+2)
	out = append(out, '"')
	out = base64.RawStdEncoding.AppendEncode(out, b)
	return append(out, '"'), nil
}

var errPacked = errors.New("days: packed form is corrupt")

// UnmarshalJSON reads the packed form, or the object form (a JSON array of buckets).
func (ds *Days) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '[' {
		var days []Day
		if err := json.Unmarshal(data, &days); err != nil {
			return err
		}
		*ds = days
		return nil
	}
	if len(data) < 2 || data[0] != '"' || data[len(data)-1] != '"' {
		return fmt.Errorf("days: want a packed string or an array, got %.20s", data)
	}
	b, err := base64.RawStdEncoding.DecodeString(string(data[1 : len(data)-1]))
	if err != nil {
		return fmt.Errorf("days: %w", err)
	}
	if len(b) == 0 || b[0] != packedVersion {
		return fmt.Errorf("days: packed version: want %d", packedVersion)
	}
	b = b[1:]
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	sv := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	var out Days
	prev := int32(0)
	for len(b) > 0 {
		delta := uv()
		if b == nil || delta > math.MaxUint32 {
			return errPacked
		}
		d := Day{Day: prev + int32(uint32(delta))}
		if len(out) > 0 && d.Day <= prev {
			return errPacked
		}
		prev = d.Day
		set := uv()
		if b == nil || set >= 1<<9 {
			return errPacked
		}
		if set&fSpend != 0 {
			d.SpendFen = sv()
		}
		if set&fVoice != 0 {
			d.VoiceMinutes = sv()
		}
		if set&fData != 0 {
			if len(b) < 8 {
				return errPacked
			}
			d.DataMB = math.Float64frombits(binary.LittleEndian.Uint64(b))
			b = b[8:]
		}
		if set&fDropped != 0 {
			d.Dropped = sv()
		}
		if set&fComplaints != 0 {
			d.Complaints = int32(sv())
		}
		if set&fCare != 0 {
			d.Care = int32(sv())
		}
		if set&fRetention != 0 {
			d.Retention = int32(sv())
		}
		if set&fIncidents != 0 {
			d.Incidents = int32(sv())
		}
		if set&fDowngrades != 0 {
			d.Downgrades = int32(sv())
		}
		if b == nil {
			return errPacked
		}
		out = append(out, d)
	}
	*ds = out
	return nil
}
