package purge

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestRequestValidate(t *testing.T) {
	long := strings.Repeat("a", MaxValueBytes+1)
	for _, tc := range []struct {
		r       Request
		wantErr string // substring; "" = valid
	}{
		{Request{Key: "http://example.com/a"}, ""},
		{Request{Tag: "match-1234", Soft: true, Wait: Duration(2 * time.Second)}, ""},
		{Request{Prefix: "/news/"}, ""},
		{Request{All: true, Wait: Duration(MaxWait)}, ""},
		{Request{Key: strings.Repeat("a", MaxValueBytes)}, ""},
		{Request{}, "exactly one"},
		{Request{Soft: true}, "exactly one"},
		{Request{Key: "a", Tag: "b"}, `got "key" and "tag"`},
		{Request{Prefix: "/", All: true}, `got "prefix" and "all"`},
		{Request{Key: long}, "key is 2049 bytes"},
		{Request{Tag: long}, "tag is 2049 bytes"},
		{Request{Prefix: "/a\x00"}, "control character"},
		{Request{Tag: "a b"}, "space or comma"},
		{Request{Tag: "a,b"}, "space or comma"},
		{Request{Tag: "a", Wait: Duration(-time.Second)}, "negative"},
		{Request{Tag: "a", Wait: Duration(MaxWait + 1)}, "maximum"},
	} {
		err := tc.r.Validate()
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tc.r, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%+v: error %v, want one containing %q", tc.r, err, tc.wantErr)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(Request{Tag: "x", Wait: Duration(1500 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"tag":"x","wait":"1.5s"}`; got != want {
		t.Errorf("marshal = %s, want %s", got, want)
	}
	var r Request
	if err := json.Unmarshal(b, &r); err != nil || time.Duration(r.Wait) != 1500*time.Millisecond {
		t.Errorf("round trip: %v %v", r.Wait, err)
	}
	for _, bad := range []string{`{"wait": 2}`, `{"wait": "2 seconds"}`, `{"wait": true}`} {
		if err := json.Unmarshal([]byte(bad), &r); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
