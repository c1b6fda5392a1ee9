package nodespec

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParse(t *testing.T) {
	tests := []struct {
		nodes, failover string
		want            []Node
		wantErr         string
	}{
		{nodes: "", want: nil},
		{nodes: "127.0.0.1:11211", want: []Node{{ID: "n1", Addr: "127.0.0.1:11211"}}},
		{nodes: "[::1]:11211", want: []Node{{ID: "n1", Addr: "[::1]:11211"}}},
		{nodes: "n1:a:1 n2:b:2", want: []Node{{ID: "n1", Addr: "a:1"}, {ID: "n2", Addr: "b:2"}}},
		{nodes: "n1:a:1,n2:b:2", failover: "n1", want: []Node{{ID: "n1", Addr: "a:1", Failover: true}, {ID: "n2", Addr: "b:2"}}},
		{nodes: " n1:a:1 ,  n_2:[::1]:2 ", failover: " n_2 ", want: []Node{{ID: "n1", Addr: "a:1"}, {ID: "n_2", Addr: "[::1]:2", Failover: true}}},
		{nodes: "n1:a:1", failover: "n1", wantErr: "at least one must be a primary"},
		{nodes: "n1:a:1 n2:b:2", failover: "n3", wantErr: `failover node "n3" is not in the node list`},
		{nodes: "n1:a:1 n1:b:2", wantErr: `node id "n1" appears twice`},
		{nodes: "n1:a:1 n2:a:1", wantErr: "same address"},
		{nodes: "n-1:a:1 n2:b:2", wantErr: "only letters, digits and _"},
		{nodes: "a:1 b:2", wantErr: "want id:host:port"},
		{nodes: "n1:a:0", wantErr: "port must be"},
		{nodes: "n1:a:x", wantErr: "port must be"},
		{nodes: "n1::11211", wantErr: "no host"},
		{nodes: "localhost", wantErr: "bad address"},
		{nodes: "", failover: "n1", wantErr: "not in the node list"},
		{nodes: strings.Repeat("n", 33) + ":a:1", wantErr: "1..32 characters"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.nodes, tt.failover)
		if tt.wantErr != "" {
			if assert.Error(t, err, "Parse(%q, %q) = %+v, nil, want an error containing %q", tt.nodes, tt.failover, got, tt.wantErr) {
				assert.Contains(t, err.Error(), tt.wantErr, "Parse(%q, %q) error = %v, want it to contain %q", tt.nodes, tt.failover, err, tt.wantErr)
			}
			continue
		}
		if assert.NoError(t, err, "Parse(%q, %q) error = %v, want nil", tt.nodes, tt.failover, err) {
			assert.Equal(t, tt.want, got, "Parse(%q, %q) = %+v, want %+v", tt.nodes, tt.failover, got, tt.want)
		}
	}
}
