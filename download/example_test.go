package download_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/httpclient"
	"github.com/haul/haul/download/input"
	"github.com/haul/haul/download/naming"
	"github.com/haul/haul/sink"
)

// Embedding haul: a list in, files out, one Result per entry.
func Example() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "body of %s\n", r.URL.Path)
	}))
	defer srv.Close()
	dir, _ := os.MkdirTemp("", "haul-example-")
	defer os.RemoveAll(dir)

	client, err := httpclient.New(httpclient.Options{Jobs: 4})
	if err != nil {
		panic(err)
	}
	defer client.CloseIdleConnections()
	files, err := sink.NewFile(dir, sink.FileOptions{})
	if err != nil {
		panic(err)
	}
	defer files.Close()
	eng := download.New(client, files, download.Options{
		Jobs:   4,
		Layout: naming.LayoutFlat,
		OnResult: func(r *download.Result) { // from any goroutine
			fmt.Println(r.Name, r.Status, r.Size)
		},
	})
	list := srv.URL + "/a.txt\n" + srv.URL + "/b.txt out=renamed/b.txt\n"
	if err := eng.Run(context.Background(), input.NewScanner(strings.NewReader(list))); err != nil {
		panic(err)
	}
	b, _ := os.ReadFile(dir + "/renamed/b.txt")
	fmt.Print(string(b))
	// Unordered output:
	// a.txt ok 15
	// renamed/b.txt ok 15
	// body of /b.txt
}
