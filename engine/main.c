/* hsmenroll entry point (placeholder while the CLI is being built). */
int main(void)
{
    return 0;
}
