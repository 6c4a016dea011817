package main

// commands are walmq's commands, in the order "walmq help" lists them.
var commands = []command{
	{name: "topic create", args: "NAME", flags: "[--partitions N] [--max-age D] [--max-bytes N]",
		summary: "create a topic", nargs: [2]int{1, 1}, setup: topicCreate},
	{name: "topic list",
		summary: "list the topics", nargs: [2]int{0, 0}, setup: topicList},
	{name: "topic describe", args: "NAME",
		summary: "describe a topic and each of its partitions", nargs: [2]int{1, 1}, setup: topicDescribe},
	{name: "topic delete", args: "NAME",
		summary: "delete a topic with its messages and groups", nargs: [2]int{1, 1}, setup: topicDelete},
	{name: "pub", args: "TOPIC [MESSAGE...]", flags: "[--key K] [--id ID] [--acks]",
		summary: "publish the messages given, or each line of standard input", help: pubHelp, nargs: [2]int{1, -1}, setup: pub},
	{name: "sub", args: "TOPIC", flags: "--group G [--count N] [--wait D] [--json]",
		summary: "consume messages as a group: print and ack them", help: subHelp, nargs: [2]int{1, 1}, setup: sub},
	{name: "group list", args: "TOPIC",
		summary: "list the consumer groups of a topic", nargs: [2]int{1, 1}, setup: groupList},
	{name: "group describe", args: "TOPIC GROUP",
		summary: "show a group's progress on each partition", help: groupDescribeHelp, nargs: [2]int{2, 2}, setup: groupDescribe},
	{name: "group reset", args: "TOPIC GROUP", flags: "(--to-offset N | --to-time T)",
		summary: "move a group to an offset or a time", help: groupResetHelp, nargs: [2]int{2, 2}, setup: groupReset},
	{name: "status",
		summary: "show the node's id, role, leader, term, applied index and members", nargs: [2]int{0, 0}, setup: status},
	{name: "bench", flags: "[--topic T] [--partitions P] [--size B] [--n N] [--producers P] [--window W] [--json]",
		summary: "measure publish and consume throughput", help: benchHelp, nargs: [2]int{0, 0}, setup: bench},
}
