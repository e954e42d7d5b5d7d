// Command promrules checks Prometheus rule files the way `promtool check rules` does: rulefmt.ParseFile parses
// the YAML strictly and every expression with the PromQL parser. It prints each error and exits 1 on any.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	failed := false
	for _, path := range os.Args[1:] {
		logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
		groups, errs := rulefmt.ParseFile(path, false, model.UTF8Validation, parser.NewParser(parser.Options{}), logger)
		for _, err := range errs {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			failed = true
		}
		if groups != nil {
			rules := 0
			for _, group := range groups.Groups {
				rules += len(group.Rules)
			}
			fmt.Printf("%s: %d groups, %d rules: SUCCESS\n", path, len(groups.Groups), rules)
		}
	}
	if failed {
		os.Exit(1)
	}
}
