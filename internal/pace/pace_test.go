package pace

import (
	"testing"
	"time"
)

func TestStream(t *testing.T) {
	const window = time.Second
	type batch struct {
		at time.Duration // since the start
		n  int
	}
	tests := []struct {
		name    string
		batches []batch
		want    bool
	}{
		{"nothing yet", nil, false},
		{"one large batch", []batch{{0, 100}}, false},
		{"a burst straddling two batches", []batch{{0, 17}, {10 * time.Millisecond, 63}}, false},
		{"three large batches back to back", []batch{{0, 10}, {100 * time.Millisecond, 10}, {600 * time.Millisecond, 10}}, true},
		{"a stream goes on", []batch{{0, 10}, {500 * time.Millisecond, 10}, {time.Second - 1, 10}, {1500 * time.Millisecond, 10}}, true},
		{"a pause breaks the run", []batch{{0, 10}, {100 * time.Millisecond, 10}, {1200 * time.Millisecond, 10}}, false},
		{"a small batch breaks the run", []batch{{0, 10}, {100 * time.Millisecond, 1}, {200 * time.Millisecond, 10}}, false},
		{"small batches are no stream", []batch{{0, 3}, {10 * time.Millisecond, 3}, {20 * time.Millisecond, 3}, {30 * time.Millisecond, 3}}, false},
		{"a stream after a pause", []batch{{0, 10}, {5 * time.Second, 10}, {5100 * time.Millisecond, 10}, {5200 * time.Millisecond, 10}}, true},
	}
	start := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Stream{Window: window, MinBatch: 4}
			for _, b := range tt.batches {
				s.Note(start.Add(b.at), b.n)
			}
			if got := s.On(); got != tt.want {
				t.Errorf("On() = %v, want %v", got, tt.want)
			}
		})
	}
}
