# The language model in concurrent sessions: two backends generate at the
# same time from one model file, another session watches their progress in
# tutor.training_progress and cancels them; each cancel lands within a
# second, and both sessions then still generate, the same text.
#
# Needs the default model: TUTOR_MODEL_DIR names a directory holding
# SmolLM2-135M-Instruct.Q4_1.gguf (scripts/test.sh sets it up).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $model_dir = $ENV{TUTOR_MODEL_DIR} // '';
plan skip_all => 'TUTOR_MODEL_DIR does not hold the default model (run scripts/fetch_model.sh)'
  unless $model_dir ne '' && -r "$model_dir/SmolLM2-135M-Instruct.Q4_1.gguf";

my $node = PostgreSQL::Test::Cluster->new('llm');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'tutor_llm'
tutor.model_dir = '$model_dir'
tutor.threads = 1
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION tutor_llm');

# a generation that runs until it is cancelled (the context would take minutes)
my $long = q{SELECT tutor.generate('Write a long story about a dragon.',
  '{"max_tokens": 100000, "context": 8192, "ignore_end": true}');};

my @sessions;
for my $i (1 .. 2)
{
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $bg->query_safe('SELECT pg_backend_pid()');
	$bg->query_until(qr/started/, "\\echo started\n$long\n");
	push @sessions, { bg => $bg, pid => $pid };
}

# both show up in the progress view, decoding, with their token counts growing
ok( $node->poll_query_until(
		'postgres', q{
SELECT count(*) = 2 FROM tutor.training_progress
WHERE kind = 'generate' AND phase = 'decode' AND batches_done >= 5}),
	'two sessions generate at once and report progress');
my $rows = $node->safe_psql(
	'postgres', q{
SELECT string_agg(format('%s %s %s %s', model_name, kind, batches_per_epoch, rows_read > 0), ';')
FROM tutor.training_progress});
is($rows, 'default generate 100000 t;default generate 100000 t',
	'progress names the model, the kind, max_tokens and the prompt read');

# cancel each from this session: the statement ends within a second
for my $s (@sessions)
{
	my $t0 = time();
	$node->safe_psql('postgres', "SELECT pg_cancel_backend($s->{pid})");
	$s->{bg}->query('SELECT 1');
	my $elapsed = time() - $t0;
	like($s->{bg}->{stderr}, qr/canceling statement due to user request/,
		"session $s->{pid}: the generation was cancelled");
	cmp_ok($elapsed, '<', 1.0, "session $s->{pid}: the cancel took effect within 1 s");
	note sprintf('cancel to next statement: %.3f s', $elapsed);
	$s->{bg}->{stderr} = '';	# the error is seen; later queries start clean
}

is($node->safe_psql('postgres', 'SELECT count(*) FROM tutor.training_progress'),
	'0', 'no generation is left in the progress view');

# the sessions still work, and the same prompt gives the same text in both
my @texts;
for my $s (@sessions)
{
	push @texts,
	  $s->{bg}->query_safe(
		q{SELECT tutor.generate('The three most important things to learn in algebra are', '{"max_tokens": 16}')});
}
isnt($texts[0], '', 'a cancelled session generates again');
is($texts[0], $texts[1], 'both sessions write the same greedy text');

$_->{bg}->quit for @sessions;
$node->stop;
done_testing();
