// The AWS SDK's default credential chain ends at the EC2 instance metadata service, an
// address outside this machine: tests must never reach for it, whatever a test forgets.
process.env.AWS_EC2_METADATA_DISABLED = 'true';
