package conjur

import "strings"

// dryRunAdvice is the second line Conjur adds to a dry run's error message
// (its Commands::Policy::ExplainError): advice for the YAML and policy
// errors it knows, keyed by the error's first line. Errors without advice
// get an empty second line, as in Conjur.
var dryRunAdvice = map[string]string{
	"Unexpected scalar": "Please check the syntax for defining a new node.",
	"block sequence entries are not allowed in this context":                         "This error can occur when you have an unnecessary '-' at the beginning of a line",
	"could not find expected ':' while scanning a simple key":                        "This error can occur when you have a missing ':' or missing space after ':'",
	"did not find expected '-' indicator while parsing a block collection":           "This error can occur when you have an indentation problem",
	"did not find expected ',' or ']' while parsing a flow sequence":                 "This error can occur when you don't end a list properly, or have a problem element in the list",
	"did not find expected ',' or '}' while parsing a flow mapping":                  "This error can occur when you don't end a mapping properly, or have a problem element in the mapping",
	"did not find expected '!' while scanning a tag":                                 "This error can occur when you're missing the '!' at the beginning of a tag (the allowable tags are: !delete, !deny, !grant, !group, !host, !host-factory, !layer, !permit, !policy, !revoke, !user, !variable, !webservice)",
	"did not find expected <document start>":                                         "This error can occur when you have unnecessary white space on your YAML header",
	"did not find expected alphabetic or numeric character while scanning an alias":  "This error can occur when you have unexpected characters. Putting terms containing non-alphanumeric characters in quotes might help.",
	"did not find expected alphabetic or numeric character while scanning an anchor": "This error can occur when you have unexpected characters. Putting terms containing non-alphanumeric characters in quotes might help.",
	"did not find expected comment or line break while scanning a block scalar":      "This error can occur when you have a problem in a block scalar.",
	"did not find expected hexdecimal number while parsing a quoted scalar":          "This error can occur when you have an unexpected backslash (\\) in the indicated line",
	"did not find expected node content while parsing a block node":                  "This error can occur when you have an unexpected character at the beginning of the node. Putting the node in quotes might help",
	"did not find expected node content while parsing a flow node":                   "This error can occur when you have an unexpected character at the beginning of the node. putting the node in quotes might help",
	"did not find expected whitespace or line break while scanning a tag":            "Only one node can be defined per line.",
	"found a tab character that violates indentation while scanning a plain scalar":  "You must use spaces for indentation, not tabs.",
}

// adviceFor returns Conjur's advice for an error message.
func adviceFor(msg string) string {
	if a, ok := dryRunAdvice[msg]; ok {
		return a
	}
	switch {
	case strings.HasPrefix(msg, "Unrecognized data type"):
		return "The tag must be one of the following: !delete, !deny, !grant, !group, !host, !host-factory, !layer, !permit, !policy, !revoke, !user, !variable, !webservice"
	case strings.HasPrefix(msg, "Invalid IP address or CIDR range") && !strings.Contains(msg, "Value has bits set to right of mask"):
		return "Make sure your address or range is in the correct format (e.g. 192.168.1.0 or 192.168.1.0/16)"
	case strings.HasSuffix(msg, "has a blank id"):
		return "Each resource must be identified using the 'id' field"
	case strings.HasPrefix(msg, "Dependency cycle encountered between"):
		return "Try redefining one or both."
	}
	return ""
}
