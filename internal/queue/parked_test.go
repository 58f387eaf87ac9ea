package queue

import (
	"testing"
	"time"

	"github.com/sersyncd/sersyncd/internal/testutil"
)

func TestParked(t *testing.T) {
	const park = time.Hour
	tests := []struct {
		name string
		// then acts on the claimed, parked record of "f" of target "a".
		then func(t *testing.T, q *Queue)
		want bool
	}{
		{"parked", func(*testing.T, *Queue) {}, true},
		{"changed again", func(t *testing.T, q *Queue) { mustAdd(t, q, "f") }, false},
		{"failed again, not on its own", func(t *testing.T, q *Queue) {
			q.Unpark("a")
			if err := q.Fail("a", mustClaim(t, q, "a", 10), Failure{ExitCode: 10}); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"pushed", func(t *testing.T, q *Queue) {
			q.Unpark("a")
			mustAck(t, q, "a", mustClaim(t, q, "a", 10))
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := testutil.OpenQueue(t, Open, "", "a", "b")
			mustAdd(t, q, "f", "g")
			items := mustClaim(t, q, "a", 1)
			if len(items) != 1 || items[0].Path != "f" || items[0].Attempts != 0 {
				t.Fatalf("claimed %+v", items)
			}
			if err := q.Fail("a", items, Failure{ExitCode: 23, Park: park}); err != nil {
				t.Fatal(err)
			}
			tc.then(t, q)
			if got := q.Parked("f"); got != tc.want {
				t.Errorf("Parked(f) = %v, want %v", got, tc.want)
			}
			if q.Parked("g") {
				t.Error("Parked(g) for a record never pushed")
			}
		})
	}
}

func TestClaimCarriesAttempts(t *testing.T) {
	q, _ := testutil.OpenQueue(t, Open, "", "t")
	mustAdd(t, q, "f")
	for want := 0; want < 3; want++ {
		items := mustClaim(t, q, "t", 1)
		if len(items) != 1 || items[0].Attempts != want {
			t.Fatalf("claim %d: %+v, want %d attempts", want, items, want)
		}
		if err := q.Fail("t", items, Failure{ExitCode: 23}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadParksAfterReopen(t *testing.T) {
	q, path := testutil.OpenQueue(t, Open, "", "a")
	mustAdd(t, q, "f", "g", "h")
	items := mustClaim(t, q, "a", 3)
	before := time.Now()
	for _, it := range items {
		park := time.Hour
		if it.Path == "g" {
			park = time.Minute
		}
		if it.Path == "h" {
			park = 0 // failed, not parked
		}
		if err := q.Fail("a", []Item{it}, Failure{ExitCode: 23, Park: park}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, _ = testutil.OpenQueue(t, Open, path, "a")
	if q.Parked("f") {
		t.Fatal("parks known before LoadParks")
	}
	next, err := q.LoadParks("a")
	if err != nil {
		t.Fatal(err)
	}
	if next.Before(before.Add(time.Minute)) || next.After(time.Now().Add(time.Minute)) {
		t.Errorf("earliest park ends %v, want a minute after %v", next, before)
	}
	for p, want := range map[string]bool{"f": true, "g": true, "h": false} {
		if got := q.Parked(p); got != want {
			t.Errorf("Parked(%s) = %v, want %v", p, got, want)
		}
	}
}
